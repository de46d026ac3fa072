"""The REST service: ``medsight serve`` answers ``POST /v1/predict`` and serves the web viewer.

``create_app(registry, settings)`` builds the FastAPI app; :mod:`medsight.service.models`
loads the runs once; inference runs in :mod:`medsight.service.pool`.
"""
