"""Speed measurement shared by `benchmarks/` and the `polyformer bench` verb: the timing protocol
(`timing`), decode timing (`decode`), the peers a CPU user would pick instead (`peers`) and the
verb's runs (`run_bench`)."""
