namespace MiniKV.Cli;

/// <summary>The exit statuses of <c>minikv</c> (docs: SPEC "The minikv command").</summary>
internal static class ExitCodes
{
    public const int Success = 0;

    /// <summary>The operation failed or found problems (not found, an error answer, verify found damage).</summary>
    public const int Failure = 1;

    /// <summary>The command line itself was wrong.</summary>
    public const int Usage = 2;

    /// <summary>Interrupted by Ctrl-C.</summary>
    public const int Interrupted = 130;
}
