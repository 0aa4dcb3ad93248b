"""``unetlab serve``: predict and inspect a model in the browser (the ``[web]`` extra).

- :mod:`~unetlab.serve.model`: the one place the model is opened, and its model card;
- :mod:`~unetlab.serve.handlers`: uploads, predictions for the page, downloads, error maps,
  the file-serving guard (numpy and Pillow; no web framework);
- :mod:`~unetlab.serve.inspection`: a split scored image by image, cached in the run folder;
- :mod:`~unetlab.serve.app`: the FastAPI routes and the server; ``static/``: the page.
"""
