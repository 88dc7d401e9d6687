"""Text: the text modality, laid out as aigc.image is.

`sources/` and `collect` (builtin, folder and HTTP sources into a raw snapshot), `clean`
(normalize, strip markup, quarantine; `minhash` finds near duplicates), `label` (labeling
functions vote on topics, `topic_rules`; overrides; the hash split), `dataset` (token blocks
and bits per character), `tokenizer`, `training` (the job a worker runs), `generator` (a
trained model and its tokenizer), `evaluate/` (likelihood, continuations, diversity, label
control) and `modality.TEXT`, what the shared stages take. Nothing heavy is imported here, so
`import aigc.text.modality` stays cheap.
"""
