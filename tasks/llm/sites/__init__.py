"""The GPT across sites: the hub, the site workers and DiLoCo's outer optimizer, on the round engine."""
