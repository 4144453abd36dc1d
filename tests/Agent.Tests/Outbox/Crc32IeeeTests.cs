using System.IO.Hashing;
using Fleet.Agent.Outbox;

namespace Fleet.Agent.Tests.Outbox;

public sealed class Crc32IeeeTests
{
    [Fact]
    public void Sliced_crc_equals_System_IO_Hashing_for_every_length_and_alignment()
    {
        var random = new Random(7);
        var data = new byte[4096 + 17];
        random.NextBytes(data);
        foreach (var length in Enumerable.Range(0, 70).Concat([255, 256, 1000, 4096]))
            for (var start = 0; start < 9; start++)
            {
                var span = data.AsSpan(start, length);
                Assert.Equal(Crc32.HashToUInt32(span), Crc32Ieee.Hash(span));
            }
        Assert.Equal(0xCBF43926u, Crc32Ieee.Hash("123456789"u8)); // the CRC-32 check value
    }

    [Fact]
    public void Crc_in_two_parts_equals_the_crc_of_the_whole()
    {
        var data = new byte[1000];
        new Random(3).NextBytes(data);

        var state = Crc32Ieee.Update(~0u, data.AsSpan(0, 28));

        Assert.Equal(Crc32.HashToUInt32(data), ~Crc32Ieee.Update(state, data.AsSpan(28)));
    }
}
