"""The image task: a folder of class folders (or a table with an image-path column) in, an
image classifier out (``deepfit train photos/``, ``deepfit.fit("photos/")``; docs/images.md)."""

from deepfit.features.target import MULTILABEL_SEP, MultiLabelTarget
from deepfit.tasks.images.predictor import ImagePredictor
from deepfit.tasks.images.readers import has_image_column, is_image_data
from deepfit.tasks.images.settings import ImageSettings, recipe
from deepfit.tasks.images.demo import demo
from deepfit.tasks.images.task import ImageTask, fit_images

__all__ = ["ImageTask", "ImageSettings", "ImagePredictor", "fit_images", "recipe", "is_image_data",
           "has_image_column", "demo", "MultiLabelTarget", "MULTILABEL_SEP"]
