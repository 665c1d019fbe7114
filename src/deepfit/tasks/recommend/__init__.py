"""The recommendation task: ratings of items by users in, a recommender out.

``deepfit.fit(ratings, task="recommend", user=..., item=..., target=...)`` trains
(``task.py``); ``RecommendPredictor`` is what it returns and what ``deepfit.load`` reads back
(``predictor.py``). docs/recommend.md shows it end to end.
"""

from deepfit.tasks.recommend.predictor import RecommendPredictor
from deepfit.tasks.recommend.settings import RecommendSettings
from deepfit.tasks.recommend.task import RecommendTask, fit_recommend

__all__ = ["RecommendTask", "RecommendSettings", "RecommendPredictor", "fit_recommend"]
