"""The shared context of a run: material sent before every row's prompt, cached once when that pays.

material   the --context files and --context-text, read and checked before anything is sent
decision   whether a cachedContents entry pays, per model: its minimum size and the price arithmetic
caches     the cachedContents lifecycle: found or created, kept alive, recreated once, deleted
runtime    per model: the tokens, the choice, and the settings each request carries (cache or parts)
lifecycle  its part in a run: ready before the first request, cleaned up however the run ends
preview    --dry-run: the tokens, the choice and the cost with and without caching
"""

from gembulk.context.material import ContextItem, SharedContext, load_context

__all__ = ["ContextItem", "SharedContext", "load_context"]
