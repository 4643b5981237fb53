from wgobuild.doit_tasks import load_tasks
globals().update(load_tasks("examples/hello"))
