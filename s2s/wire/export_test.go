package wire

// BufferCap exposes the size of a Reader's input buffer, so that tests can
// check that memory stays bounded whatever the peer sends.
func BufferCap(r *Reader) int { return cap(r.buf) }

// ReadSlack is the room a Reader keeps for a read beyond its size limit.
const ReadSlack = readSlack
