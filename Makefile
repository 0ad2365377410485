# Conveniences over tasks.py (which needs only Python and pip).
.PHONY: demo test lint bench
demo:
	python3 tasks.py demo
test:
	python3 tasks.py test
lint:
	python3 tasks.py lint
bench:
	python3 tasks.py bench
