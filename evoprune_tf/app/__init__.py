"""The shell: the ``evoprune`` command line, its run options, the tracking server, explain, the demo and the experiment scripts."""
