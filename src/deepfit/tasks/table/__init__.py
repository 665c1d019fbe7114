"""The table task: classification or regression of one column of a table from the others.

``fit_table(data, TableSettings(target=...))`` trains (``task.py``); ``TablePredictor`` is
what it returns and what ``deepfit.load`` reads back (``predictor.py``).
"""

from deepfit.tasks.table.predictor import TablePredictor
from deepfit.tasks.table.settings import TableSettings
from deepfit.tasks.table.task import TableTask, fit_table

__all__ = ["TableTask", "TableSettings", "TablePredictor", "fit_table"]
