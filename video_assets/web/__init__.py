"""`video-assets serve`: the search page, the video pages, a JSON API and the media they play."""
