"""The resources the `chat` interface exports, in a module named after the
interface (componentize-py looks for them here). This plugin does not
stream, so `complete-stream` never makes one."""

from typing import Optional

from wit_world.exports import chat
from wit_world.imports import airlock_plugin_types as t
from rest import fail


class CompletionStream(chat.CompletionStream):
    def next(self) -> Optional[t.ChatDelta]:
        raise fail(t.PluginError_Unsupported("not streaming"))
