"""Rubric assessment of student programs, in plain Python (no Flask).

`grader.assess()` is the entry point; the HTTP route and the accuracy tool both call it. The
other modules are its steps: `fields` (each request field declared once, with its OpenAPI schema;
`patterns` its regular expressions), `request` (a request read and checked), `rubric` (the rubric
CSV), `comments` (JavaScript comment removal), `messages` (the chat sent to the model), `grades`
(parse and validate one model answer) and `voting` (combine several valid answers).
"""
