return await MiniKV.Volume.VolumeCommand.RunAsync(args);
