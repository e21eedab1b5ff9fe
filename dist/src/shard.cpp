// The thread half of wengert::dist is templates (threads.hpp); this unit checks that the header
// stands alone (instantiated for the MLP) and gives the library a translation unit when it is
// built without MPI.
#include <wengert/dist/threads.hpp>
#include <wengert/nn/linear.hpp>

namespace wengert::dist {
template class ThreadDataParallel<float, nn::MLP<float>>;
template class ThreadDataParallel<double, nn::MLP<double>>;
}  // namespace wengert::dist
