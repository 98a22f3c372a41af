"""Preference tuning: `codetailor finetune REPO --out DIR --feedback` tunes the repository's
adapter on what the user kept and what they wrote instead of a suggestion, and keeps the
result only if it is no worse a model of the repository's code.

- `run`: the run, setup -> data -> fit -> gate -> finish (`run_preference`);
- `records`: the feedback log's suggestion records, and their prompts rebuilt;
- `scoring`: log-probabilities under the adapter and its reference, implicit rewards;
- `losses`: DPO on pairs, KTO on unpaired labels, the chosen side's token loss;
- `anchor`: the loss on the repository's own code that holds the adapter to it;
- `loop`: the optimizer loop over both;
- `gate`: whether the tuned adapter may replace the old one;
- `command`: the command's config from its arguments, and its report.

The config is `finetune.config.PreferenceConfig`. Importing this package loads
neither torch nor transformers; the steps import them when they run.
"""

from finetune.preference.command import cmd_preference
from finetune.preference.run import run_preference

__all__ = ["cmd_preference", "run_preference"]
