"""YAML documents that remember where each key is, for error messages.

Only ``yaml.safe_load`` semantics are used: no tags, no Python objects. Every error raised
here is an `InputError` naming the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import yaml

from .errors import InputError
from .files import check_regular_file
from .limits import MAX_DOCUMENT_BYTES, check_yaml_nodes

KeyPath = Sequence["str | int"]

#: the names of model and protocol files end so; any other file is not read (its content
#: could be echoed in an error message: a password file named as a model, say)
YAML_SUFFIXES = (".yaml", ".yml")


def check_yaml_suffix(path: str | Path, what: str) -> None:
    """InputError, before reading, if ``path`` is not named like a YAML file."""
    if Path(path).suffix.lower() not in YAML_SUFFIXES:
        raise InputError(f"a {what} file must be a .yaml or .yml file; this one was not read",
                         file=str(path))


_KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


def shown_key(key) -> str:
    """A key as messages quote it: a name as it is; anything else (which could be a line of
    any file named as a model, a password hash say) is not repeated."""
    text = str(key)
    return text if isinstance(key, int) or _KEY_NAME.fullmatch(text) else "<not a key name>"


def format_key(key_path: KeyPath) -> str:
    """``("couplings", "W_rec", "init")`` -> ``"couplings.W_rec.init"``; indices as ``[i]``."""
    text = ""
    for part in key_path:
        part = part if isinstance(part, int) else shown_key(part)
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class YamlDocument:
    """A parsed YAML mapping plus the node tree that knows the line of every key.

    Attributes
    ----------
    data : dict
        The document as ``yaml.safe_load`` returns it.
    name : str
        The file name (or ``<string>``) used in messages.
    text : str
        The source text.
    """

    def __init__(self, text: str, name: str = "<string>"):
        self.text = text
        self.name = name
        if len(text) > MAX_DOCUMENT_BYTES:
            raise InputError(f"longer than {MAX_DOCUMENT_BYTES} characters: not a model or "
                             "protocol document", file=name)
        self._root, self.data = compose_and_load(text, name)
        if self.data is None:
            self.data = {}
        if not isinstance(self.data, dict):
            raise InputError("the file must hold a YAML mapping (key: value lines)", file=name,
                             line=1)
        self._check_duplicate_keys(self._root, ())

    @classmethod
    def from_path(cls, path: str | Path) -> "YamlDocument":
        path = check_regular_file(path, "YAML file")
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_DOCUMENT_BYTES + 1)
        except OSError as error:
            raise InputError(f"cannot read the file ({error.strerror})", file=str(path)) \
                from None
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise InputError(f"larger than {MAX_DOCUMENT_BYTES} bytes: not a model or "
                             "protocol file", file=str(path))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(f"not UTF-8 text (byte {error.start}): not a YAML file",
                             file=str(path)) from None
        return cls(text, str(path))

    def _check_duplicate_keys(self, node, path):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, value_node in node.value:
                key = key_node.value
                if key in seen:
                    raise InputError("duplicate key", file=self.name,
                                     line=key_node.start_mark.line + 1,
                                     key=format_key([*path, key]))
                seen.add(key)
                self._check_duplicate_keys(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._check_duplicate_keys(item, (*path, index))

    def _node(self, key_path: KeyPath):
        """The (key node, value node) at ``key_path``, or the deepest ancestor found."""
        key_node, node = None, self._root
        for part in key_path:
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if k.value == str(part):
                        key_node, node = k, v
                        break
                else:
                    return key_node, node
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                    and 0 <= part < len(node.value):
                key_node, node = node.value[part], node.value[part]
            else:
                return key_node, node
        return key_node, node

    def line(self, key_path: KeyPath) -> int | None:
        """1-based line of the key at ``key_path`` (or of its deepest existing ancestor)."""
        key_node, node = self._node(key_path)
        chosen = key_node if key_node is not None else node
        return None if chosen is None else chosen.start_mark.line + 1

    def text_start_line(self, key_path: KeyPath) -> int | None:
        """1-based line on which the text of the scalar at ``key_path`` starts.

        For a block scalar (``key: |``) that is the line after the key.
        """
        _, node = self._node(key_path)
        if node is None:
            return None
        start = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            start += 1
        return start

    def error(self, message: str, key_path: KeyPath, line: int | None = None) -> InputError:
        """An `InputError` located at ``key_path`` (or at ``line`` if given)."""
        return InputError(message, file=self.name,
                          line=line if line is not None else self.line(key_path),
                          key=format_key(key_path) or None)


def compose_and_load(text: str, name: str):
    """``(node tree, data)`` of one YAML document, bounded (`bioplast.limits`): no alias
    bomb, no nesting that exhausts the stack. Errors quote the parser's problem and the
    line, never the text itself."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        check_yaml_nodes(root, file=name)  # before the values are built from the nodes
        return root, loader.construct_document(root)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "malformed YAML"
        raise InputError(f"malformed YAML: {problem}", file=name,
                         line=None if mark is None else mark.line + 1) from None
    except yaml.YAMLError:
        raise InputError("malformed YAML", file=name) from None
    except RecursionError:
        raise InputError("the document is nested too deeply", file=name) from None
    except InputError:
        raise
    except ValueError as error:  # a constructor's: an integer of more than 4300 digits
        reason = "a number with too many digits" if "digits" in str(error) else \
            "a value that cannot be read"
        raise InputError(f"malformed YAML: {reason}", file=name) from None
    finally:
        loader.dispose()


def yaml_value(text: str, name: str):
    """One YAML value (e.g. a ``--set`` value), bounded like a document."""
    return compose_and_load(text, name)[1]


def load_yaml(source: str | Path, name: str | None = None) -> YamlDocument:
    """Read a YAML mapping from a path, or from text when ``source`` contains a newline."""
    if isinstance(source, str) and "\n" in source:
        return YamlDocument(source, name or "<string>")
    return YamlDocument.from_path(source)
