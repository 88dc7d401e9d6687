"""The stack: real servers on 127.0.0.1 for a scaled-out aigc (`aigc stack up|status|down`).

stack.py brings the services up and down; postgres.py, seaweedfs.py, tracking_server.py and
prefect_server.py each start one; profile.py writes and reads the profile that points aigc at
them. Nothing here imports Prefect, MLflow or Ray: their servers run as processes.
"""
