"""Images: the image modality, laid out as aigc.text is.

`sources` and `collect` (digits, image folders, CIFAR-10 into a raw snapshot), `clean`
(decode, size, quarantine), `label` (the source's class, overrides, the hash split),
`dataset` (`read_labeled`: one `ImageSplit` per split), `training` (the job a worker runs),
`generator` (a trained model and its classes), `evaluate/` (Fréchet distance and the rest in
a classifier's features) and `modality.IMAGE`, what the shared stages take. Nothing heavy is
imported here, so `import aigc.image.modality` stays cheap.
"""
