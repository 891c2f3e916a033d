// Every test class runs its own six-process cluster; running two at once on this 2-core box only makes both slow.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
