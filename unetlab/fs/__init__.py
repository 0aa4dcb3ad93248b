"""How unetlab touches the file system, in one place: atomic writes that honour the umask and
never replace a file this invocation did not create (:mod:`.atomic`), the run-folder lock
(:mod:`.runlock`), the translation of OS errors into clear messages (:mod:`.oserrors`), the
reader of the small text files users write (:mod:`.text`), collision-free output names
(:mod:`.names`) and what a file that is not what it claims really is (:mod:`.filekind`).
"""

from unetlab._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "atomic_path": "atomic",
        "begin_invocation": "atomic",
        "check_writable": "atomic",
        "make_folder": "atomic",
        "overwriting": "atomic",
        "refuse_existing": "atomic",
        "write_bytes": "atomic",
        "write_file": "atomic",
        "write_text": "atomic",
        "OutputExists": "atomic",
        "RunLock": "runlock",
        "os_error": "oserrors",
        "translated": "oserrors",
        "read_text": "text",
        "read_lines": "text",
        "check_unique_class_names": "text",
        "read_json": "text",
        "unique_names": "names",
        "safe_component": "names",
    },
)
