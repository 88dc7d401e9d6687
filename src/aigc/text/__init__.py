"""Text: the data and model side of the text modality.

`tokenizer.TextTokenizer` turns a labeled document into `[<|label:NAME|>, ..., <|endoftext|>]`;
`dataset` concatenates documents into a token stream, cuts it into (x, y) training blocks and
measures bits per character; `modality.TEXT` is the modality the shared stages take. Nothing
heavy is imported here, so `import aigc.text.modality` stays cheap.
"""
