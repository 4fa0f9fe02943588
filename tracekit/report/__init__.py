"""Renderers: terminal (rich), Markdown, self-contained HTML. They take ``Explanation.to_dict()``
(plus the explanation's timeline for HTML) and compute nothing."""
