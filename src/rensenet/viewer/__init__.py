"""``rensenet view``: a local web app for the people who read the scans."""
