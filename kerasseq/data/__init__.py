"""tf.data pipelines, one module per task family."""
