using System.Globalization;
using System.Text;

namespace Fleet.Agent.Probes;

/// <summary>One RESP2 reply: '+' simple string, '-' error, ':' integer, '$' bulk string (Text null for a null bulk).</summary>
internal readonly record struct RespReply(char Type, string? Text)
{
    public bool IsError => Type == '-';
}

/// <summary>
/// The few bytes of the Redis protocol (RESP2) the redis probe needs: commands as arrays of bulk strings, replies that
/// are simple strings, errors, integers or bulk strings. No reflection, no allocation beyond the replies themselves.
/// Arguments are never logged or echoed (AUTH carries the password).
/// </summary>
internal sealed class RespConnection(Stream stream)
{
    /// <summary>Bound on one reply; INFO is a few kilobytes.</summary>
    internal const int MaxReplyBytes = 4 * 1024 * 1024;

    static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);

    readonly byte[] buffer = new byte[16 * 1024];
    int start;
    int end;

    /// <summary>Sends commands back to back (pipelined); read one reply per command afterwards.</summary>
    public async ValueTask SendAsync(IReadOnlyList<IReadOnlyList<string>> commands, CancellationToken cancellationToken)
    {
        using var payload = new MemoryStream();
        foreach (var command in commands)
        {
            WriteAscii(payload, string.Create(CultureInfo.InvariantCulture, $"*{command.Count}\r\n"));
            foreach (var argument in command)
            {
                var bytes = Utf8.GetBytes(argument);
                WriteAscii(payload, string.Create(CultureInfo.InvariantCulture, $"${bytes.Length}\r\n"));
                payload.Write(bytes);
                payload.Write("\r\n"u8);
            }
        }
        await stream.WriteAsync(payload.GetBuffer().AsMemory(0, (int)payload.Length), cancellationToken);
        await stream.FlushAsync(cancellationToken);
    }

    public ValueTask SendAsync(IReadOnlyList<string> command, CancellationToken cancellationToken) =>
        SendAsync([command], cancellationToken);

    public async ValueTask<RespReply> ReadAsync(CancellationToken cancellationToken)
    {
        var line = await ReadLineAsync(cancellationToken);
        if (line.Length == 0) throw new InvalidDataException("Redis protocol error: empty reply line");
        var type = line[0];
        var rest = line[1..];
        switch (type)
        {
            case '+' or '-' or ':':
                return new RespReply(type, rest);
            case '$':
                if (!int.TryParse(rest, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var length) || length < -1)
                    throw new InvalidDataException($"Redis protocol error: bad bulk length '{Shorten(rest)}'");
                if (length == -1) return new RespReply('$', null);
                if (length > MaxReplyBytes) throw new InvalidDataException($"Redis protocol error: reply of {length} bytes exceeds {MaxReplyBytes}");
                var bulk = await ReadExactAsync(length + 2, cancellationToken);
                if (bulk[length] != '\r' || bulk[length + 1] != '\n') throw new InvalidDataException("Redis protocol error: bulk string not terminated by CRLF");
                return new RespReply('$', Utf8.GetString(bulk, 0, length));
            default:
                throw new InvalidDataException($"Redis protocol error: unexpected reply type '{type}' (is this a Redis server?)");
        }
    }

    async ValueTask<string> ReadLineAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var newline = Array.IndexOf(buffer, (byte)'\n', start, end - start);
            if (newline >= 0)
            {
                var lineEnd = newline > start && buffer[newline - 1] == '\r' ? newline - 1 : newline;
                var line = Utf8.GetString(buffer, start, lineEnd - start);
                start = newline + 1;
                return line;
            }
            if (end - start >= buffer.Length) throw new InvalidDataException("Redis protocol error: reply line too long");
            await FillAsync(cancellationToken);
        }
    }

    async ValueTask<byte[]> ReadExactAsync(int count, CancellationToken cancellationToken)
    {
        var result = new byte[count];
        var copied = 0;
        while (copied < count)
        {
            if (start == end) await FillAsync(cancellationToken);
            var take = Math.Min(count - copied, end - start);
            Buffer.BlockCopy(buffer, start, result, copied, take);
            start += take;
            copied += take;
        }
        return result;
    }

    async ValueTask FillAsync(CancellationToken cancellationToken)
    {
        if (start > 0)
        {
            Buffer.BlockCopy(buffer, start, buffer, 0, end - start);
            end -= start;
            start = 0;
        }
        var read = await stream.ReadAsync(buffer.AsMemory(end), cancellationToken);
        if (read == 0) throw new EndOfStreamException("the server closed the connection");
        end += read;
    }

    static void WriteAscii(MemoryStream target, string text)
    {
        Span<byte> bytes = stackalloc byte[text.Length];
        for (var i = 0; i < text.Length; i++) bytes[i] = (byte)text[i];
        target.Write(bytes);
    }

    static string Shorten(string text) => text.Length <= 40 ? text : text[..40] + "...";
}
