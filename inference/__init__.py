"""Using a trained model: embedding images, searching, exporting.

* `inference.model`: a trained model loaded from its workdir.
* `inference.images`: images as the model's evaluation saw them (files of
  a folder, or examples of the prepared data set).
* `inference.embed`: embeddings of a folder or a split, batched through the
  model's evaluation step.
* `inference.embeddings_file`: the ``.npz`` file of embeddings.
* `inference.search`: top-k neighbours, exact (the evaluation's search) or
  approximate (`inference.ann`, faiss).
* `inference.search_report`: the neighbours as JSON, CSV and text.
* `inference.picture`: a query and its neighbours as a picture.
* `inference.export`: the embedding function as a portable `jax.export`
  file.

Nothing is imported here, so that `training` can use `inference.picture`
without importing the model loader, which imports `training`.
"""
