return await MiniKV.Coordinator.CoordinatorCommand.RunAsync(args, MiniKV.Coordinator.Wiring.ProductionComponents.Create());
