package wire

// BufferCap exposes the size of a Reader's input buffer, so that tests can
// check that memory stays bounded whatever the peer sends.
func BufferCap(r *Reader) int { return cap(r.buf) }

// ReadSlack is the room a Reader keeps for a read beyond its size limit.
const ReadSlack = readSlack

// HoldsInput reports whether r keeps anything of what it read: a buffer, or
// a scratch (where the element handed out lives).
func HoldsInput(r *Reader) bool {
	return r.buf != nil || r.scr != nil || r.pooled != nil
}
