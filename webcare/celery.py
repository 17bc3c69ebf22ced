"""Celery application: queues ``ingest``, ``outbound`` and ``default``."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webcare.settings")

app = Celery("webcare")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("ingest"), Queue("outbound"), Queue("default"))
app.autodiscover_tasks(["inbox"], related_name="tasks")
