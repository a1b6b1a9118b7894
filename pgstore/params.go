package pgstore

import (
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// Array parameters for an append's write, encoded by pgx without an
// allocation per element. Given plain slices, pgx boxes every element into
// an interface (an allocation each for strings, byte slices and most
// integers), goes through reflection for slices of pointers, and encodes
// each uuid.UUID through its driver.Valuer — as text, parsed back — at
// about ten allocations an id. These types hand pgx pointers into the
// slices instead (an interface holds a pointer without allocating), typed
// for pgx's encoders (pgtype.ArrayGetter and the element valuers); a nil
// pointer is NULL.

// arrayDims returns the dimensions of a as a one-dimensional array; none
// (NULL) for a nil slice, as pgx's own slices.
func arrayDims[T any](a []T) []pgtype.ArrayDimension {
	if a == nil {
		return nil
	}
	return []pgtype.ArrayDimension{{Length: int32(len(a)), LowerBound: 1}}
}

type (
	uuidArray     []uuid.UUID
	textArray     []string
	nullTextArray []*string
	int8Array     []int64
	nullInt8Array []*int64
	byteaArray    [][]byte
	uuidElement   uuid.UUID
	textElement   string
	int8Element   int64
	byteaElement  []byte
)

func (a uuidArray) Dimensions() []pgtype.ArrayDimension     { return arrayDims(a) }
func (a uuidArray) Index(i int) any                         { return (*uuidElement)(&a[i]) }
func (a uuidArray) IndexType() any                          { return (*uuidElement)(nil) }
func (a textArray) Dimensions() []pgtype.ArrayDimension     { return arrayDims(a) }
func (a textArray) Index(i int) any                         { return (*textElement)(&a[i]) }
func (a textArray) IndexType() any                          { return (*textElement)(nil) }
func (a nullTextArray) Dimensions() []pgtype.ArrayDimension { return arrayDims(a) }
func (a nullTextArray) IndexType() any                      { return (*textElement)(nil) }
func (a int8Array) Dimensions() []pgtype.ArrayDimension     { return arrayDims(a) }
func (a int8Array) Index(i int) any                         { return (*int8Element)(&a[i]) }
func (a int8Array) IndexType() any                          { return (*int8Element)(nil) }
func (a nullInt8Array) Dimensions() []pgtype.ArrayDimension { return arrayDims(a) }
func (a nullInt8Array) IndexType() any                      { return (*int8Element)(nil) }
func (a byteaArray) Dimensions() []pgtype.ArrayDimension    { return arrayDims(a) }
func (a byteaArray) Index(i int) any                        { return (*byteaElement)(&a[i]) }
func (a byteaArray) IndexType() any                         { return (*byteaElement)(nil) }

func (a nullTextArray) Index(i int) any {
	if a[i] == nil {
		return nil
	}
	return (*textElement)(a[i])
}

func (a nullInt8Array) Index(i int) any {
	if a[i] == nil {
		return nil
	}
	return (*int8Element)(a[i])
}

func (u *uuidElement) UUIDValue() (pgtype.UUID, error) {
	return pgtype.UUID{Bytes: *u, Valid: true}, nil
}
func (t *textElement) TextValue() (pgtype.Text, error) {
	return pgtype.Text{String: string(*t), Valid: true}, nil
}
func (n *int8Element) Int64Value() (pgtype.Int8, error) {
	return pgtype.Int8{Int64: int64(*n), Valid: true}, nil
}
func (b *byteaElement) BytesValue() ([]byte, error) { return *b, nil }
