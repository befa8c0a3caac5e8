"""The shared context of a run: material sent before every row's prompt, cached once when that pays.

material   the --context files and --context-text, read and checked before anything is sent
decision   whether a cachedContents entry pays, per model: its minimum size and the price arithmetic
caches     the cachedContents lifecycle: found or created, kept alive, recreated once, deleted
routes     what each request carries: the cache's name, or the shared parts first (inline)
"""

from gembulk.context.material import ContextItem, SharedContext, load_context

__all__ = ["ContextItem", "SharedContext", "load_context"]
