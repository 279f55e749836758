// Which kind of model file a path holds, from its first bytes: the one place the engine probes a
// model's magic (the in-RAM model and the session both ask here).
#pragma once

#include <string>

namespace sluice {

enum class ModelFormat { gguf, pack };

// Throws sluice::Exception: kind io naming the file and errno when it cannot be opened or read,
// kind corrupt at offset 0 when it is neither a GGUF file nor a sluice pack.
ModelFormat detect_model_format(const std::string& path);

}  // namespace sluice
