return await MiniKV.Cli.CliApp.RunAsync(args, MiniKV.Cli.CliConsole.FromProcess());
