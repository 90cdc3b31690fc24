// Everything is in the header (inlined into Swift); a C target needs one source file.
#include "CPrefetch.h"
