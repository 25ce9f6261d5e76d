"""The control plane: the Serverless API v1 resources, their store, builds and the converger.

It stands beside the data plane and drives it only through `Engine.apply`/`Engine.withdraw`
(engine/deployment.py), so the arrows point one way: control → data plane, never back.
"""
