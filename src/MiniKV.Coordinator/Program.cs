// The consensus engine (Raft host over its log storage and gRPC transport), the volume client adapter and the
// leader forwarder are wired here when they are in the build; see CoordinatorComponents.
return await MiniKV.Coordinator.CoordinatorCommand.RunAsync(args, components: null);
