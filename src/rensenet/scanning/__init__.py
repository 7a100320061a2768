"""Running a trained model over a user's files: whole slices and volumes (``scan``) and window-sized images
(``predict``)."""
