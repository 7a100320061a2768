"""Explanations you can measure: CAM heatmaps for any model, scored against lesion masks."""
from ..base.cam import CAM_METHODS, compute_cams, default_target_layers
from .run import (
    Explanation,
    compare_models,
    compare_panels,
    explain,
    explain_model,
    lesion_panel,
    load_lesion_panel,
    save_lesion_panel,
    write_explanation,
)
from .scores import (
    SCORES,
    energy_in_lesion,
    energy_lift,
    iou_dice,
    pointing_game,
    road_scores,
    score_heatmaps,
    summarize_localization,
)

__all__ = ["CAM_METHODS", "Explanation", "SCORES", "compare_models", "compare_panels", "compute_cams",
           "default_target_layers", "energy_in_lesion", "energy_lift", "explain", "explain_model", "iou_dice",
           "lesion_panel", "load_lesion_panel", "pointing_game", "road_scores", "save_lesion_panel", "score_heatmaps", "summarize_localization", "write_explanation"]
