"""Experiments over many runs: the multi-label vs single-label comparison and the quickstart.

``orchestrate.run_comparison(cfg, out_dir)`` trains every model variant for every seed on one
frozen split, ``compare.compare_runs(run_dirs)`` aggregates run folders into a comparison
dict (mean and std over seeds), ``report.write_report`` writes it as JSON, Markdown and PNG
plots and ``report.log_comparison_run`` mirrors it into a W&B ``compare`` run.
``quickstart.run_quickstart(out_dir)`` is the main job: all of it, tiny, on CPU.
"""
