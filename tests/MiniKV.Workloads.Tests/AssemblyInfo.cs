// Each workload runs a six-process cluster under a nemesis; two at once on a 2-core box would only starve both.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
