using Microsoft.Win32.SafeHandles;

namespace Fleet.Agent.Outbox;

/// <summary>
/// In-memory index of one segment file: 16 bytes per record (counter, offset, length, done flag), never the payloads.
/// All records of a segment share one epoch (a segment is only ever written by one open outbox) and have strictly
/// increasing counters, so a key is found by binary search. Guarded by the outbox's lock.
/// </summary>
internal sealed class Segment(long id, string path)
{
    private const uint DoneBit = 0x8000_0000;

    private Entry[] _entries = [];

    public long Id { get; } = id;
    public string Path { get; } = path;

    /// <summary>Open only while the segment is being written or read; sealed segments are not kept open.</summary>
    public SafeFileHandle? Handle { get; set; }

    public ulong Epoch { get; set; }

    /// <summary>Valid bytes in the file (including records written but not yet fsync'ed).</summary>
    public long Length { get; set; }

    /// <summary>Records written in the current group commit but not yet fsync'ed (not visible to readers yet).</summary>
    public int InFlight { get; set; }

    /// <summary>No more appends go here; the file is deleted once nothing in it is pending.</summary>
    public bool Sealed { get; set; }

    /// <summary>Published records.</summary>
    public int Count { get; private set; }

    public int PendingCount { get; set; }
    public long PendingBytes { get; set; }

    public int DoneCount => Count - PendingCount;

    public void Add(ulong counter, long offset, int length)
    {
        if (Count == _entries.Length)
            Array.Resize(ref _entries, Math.Max(16, _entries.Length * 2));
        _entries[Count++] = new Entry { Counter = counter, Offset = checked((uint)offset), LengthAndDone = (uint)length };
    }

    public ulong CounterAt(int index) => _entries[index].Counter;
    public long OffsetAt(int index) => _entries[index].Offset;
    public int LengthAt(int index) => (int)(_entries[index].LengthAndDone & ~DoneBit);
    public bool IsDone(int index) => (_entries[index].LengthAndDone & DoneBit) != 0;
    public void SetDone(int index) => _entries[index].LengthAndDone |= DoneBit;

    public ulong FirstCounter => _entries[0].Counter;
    public ulong LastCounter => _entries[Count - 1].Counter;

    /// <summary>Index of the record with this counter, or -1.</summary>
    public int IndexOf(ulong counter)
    {
        int lo = 0, hi = Count - 1;
        while (lo <= hi)
        {
            var mid = lo + ((hi - lo) >> 1);
            var c = _entries[mid].Counter;
            if (c == counter) return mid;
            if (c < counter) lo = mid + 1; else hi = mid - 1;
        }
        return -1;
    }

    /// <summary>Releases the slack of the entry array (for segments that will not grow any more).</summary>
    public void TrimEntries()
    {
        if (_entries.Length > Count) Array.Resize(ref _entries, Count);
    }

    private struct Entry
    {
        public ulong Counter;
        public uint Offset;
        public uint LengthAndDone;
    }
}
