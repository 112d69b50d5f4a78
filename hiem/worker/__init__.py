"""hiem's Celery application and tasks: fan-out, delivery and the sweeper that re-enqueues what is stuck."""
