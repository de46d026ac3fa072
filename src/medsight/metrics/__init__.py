"""Point metrics shared by training (validation) and evaluation: ROC-AUC and VOC detection AP.

They sit below both, so training's validation never imports the evaluation package;
confidence intervals, reports and figures stay in :mod:`medsight.evaluation`.
"""
