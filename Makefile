.PHONY: demo test
# The product in two minutes on a real local Flux (installs what it needs first).
demo:
	./scripts/demo
# The whole test suite from a fresh clone (the same command CI runs).
test:
	./scripts/test
