return await Fleet.Cli.Cli.RunAsync(args, new Fleet.Cli.CliEnvironment(Console.Out, Console.Error) { HandleProcessTermination = true });
