"""The training engine: Learner, callbacks, schedules, checkpoints, distributed set-up."""
