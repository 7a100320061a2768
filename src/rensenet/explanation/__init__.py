"""Explanations you can measure: CAM heatmaps for any model, scored against lesion masks."""
from .cam import CAM_METHODS, compute_cams, default_target_layers, road_scores
from .run import Explanation, compare_models, explain, explain_model, write_explanation
from .scores import (
    SCORES,
    energy_in_lesion,
    energy_lift,
    iou_dice,
    pointing_game,
    score_heatmaps,
    summarize_localization,
)

__all__ = ["CAM_METHODS", "Explanation", "SCORES", "compare_models", "compute_cams", "default_target_layers",
           "energy_in_lesion", "energy_lift", "explain", "explain_model", "iou_dice", "pointing_game",
           "road_scores", "score_heatmaps", "summarize_localization", "write_explanation"]
