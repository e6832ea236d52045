"""An XML-RPC namespace that the embedded supervisord loads (`[rpcinterface:hoodyd]`): add one
process group from one conf file.

supervisord's own way to add a group is `reloadConfig` (re-read the main config and every
included file) and then `addProcessGroup`; with one file per port instance, registering the
200th instance re-reads 199 files first, so registration costs grow with the number
registered. `hoodyd.addGroupFromFile` parses only the named file, the same way supervisord
parses an included one, puts the group's config among supervisord's (so a later
`reloadConfig`, which reads the same file, sees no change) and adds the group.

This module runs inside supervisord: it imports supervisor and the standard library only.
"""

from __future__ import annotations

import bisect
import json
import os
from typing import Any

from supervisor.options import UnhosedConfigParser
from supervisor.rpcinterface import SupervisorNamespaceRPCInterface
from supervisor.states import SupervisorStates
from supervisor.xmlrpc import Faults, RPCError

API_VERSION = "1"


class HoodydNamespace:
    def __init__(self, supervisord: Any, include_dir: str) -> None:
        self.supervisord = supervisord
        # the one directory whose files this namespace reads (the [include] of the config)
        self.include_dir = os.path.realpath(include_dir)

    def getAllProcessInfoJSON(self) -> str:
        """`supervisor.getAllProcessInfo` as one JSON text: the same structs, without
        marshalling a thousand of them as XML (the cost of every answer grows with the
        number of processes, and this one is read at every start-up and poll).

        @return string json  the list of process info structs
        """
        infos = SupervisorNamespaceRPCInterface(self.supervisord).getAllProcessInfo()
        return json.dumps(infos, separators=(",", ":"))

    def getAPIVersion(self) -> str:
        """The version of this namespace.

        @return string version
        """
        return API_VERSION

    def addGroupFromFile(self, path: str) -> list[str]:
        """Parse one conf file and add the process groups it defines.

        @param string path   absolute path of a file in supervisord's include dir
        @return array names  the groups added
        """
        real = os.path.realpath(path)
        if os.path.dirname(real) != self.include_dir or not real.endswith(".conf"):
            raise RPCError(Faults.BAD_ARGUMENTS, f"{path}: not a conf file of {self.include_dir}")
        options = self.supervisord.options
        mood = options.mood
        if isinstance(mood, int) and mood < SupervisorStates.RUNNING:
            raise RPCError(Faults.SHUTDOWN_STATE)
        parser = UnhosedConfigParser()
        parser.expansions = options.environ_expansions
        try:
            if not parser.read(real):
                raise RPCError(Faults.NO_FILE, path)
            parser.expand_here(self.include_dir)
            configs = options.process_groups_from_parser(parser)
        except (ValueError, OSError) as exc:
            raise RPCError(Faults.CANT_REREAD, f"{path}: {exc}") from exc
        added = []
        for config in configs:
            if config.name in self.supervisord.process_groups:
                raise RPCError(Faults.ALREADY_ADDED, config.name)
            configs_now = options.process_group_configs
            stale = [i for i, c in enumerate(configs_now) if c.name == config.name]
            for index in reversed(stale):  # an earlier definition, removed since
                del configs_now[index]
            bisect.insort(configs_now, config)  # kept in priority order, as supervisord does
            self.supervisord.add_process_group(config)
            added.append(config.name)
        return added


def make_rpcinterface(supervisord: Any, *, include_dir: str, **_config: str) -> HoodydNamespace:
    return HoodydNamespace(supervisord, include_dir)
