"""Images: the data side of the image modality (sources, collect, clean, label, the dataset).

`dataset.read_labeled(path)` is what training and evaluation read: one `ImageSplit` per split.
Nothing heavy is imported here, so `import aigc.image.dataset` stays cheap.
"""
