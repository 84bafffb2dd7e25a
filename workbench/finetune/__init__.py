"""Fine-tuning: labelled tasks (built-in ones from the plays, split by play, and user files; ``tasks``,
``user_data``), task heads on any pretrained trunk with freezing (``heads``), the objectives that let the generic
trainer fit them (``objectives``), and their metrics (``metrics``: accuracy, macro-F1, entity F1
as seqeval, SQuAD exact match and F1)."""

from .tasks import (TASKS, TEST_PLAYS, VAL_PLAYS, QAExample, TaskData, TextExample, TokenExample, load_task,
                    play_slug, sample_budget)
from .user_data import load_user_task

__all__ = ["TASKS", "TEST_PLAYS", "VAL_PLAYS", "QAExample", "TaskData", "TextExample", "TokenExample",
           "load_task", "load_user_task", "play_slug", "sample_budget"]
