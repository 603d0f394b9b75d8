// The sample's logic, in plain Kotlin + coroutines (no Android types), so that the JVM test
// project compiles and runs it against the real library (android/jvm-tests, SampleControllerTest).
// The Android ViewModel only forwards to it.
package dev.edgewise.sample

import dev.edgewise.ChatSession
import dev.edgewise.DownloadListener
import dev.edgewise.DownloadProgress
import dev.edgewise.EdgewiseException
import dev.edgewise.Engine
import dev.edgewise.EngineConfig
import dev.edgewise.EngineInfo
import dev.edgewise.GenerationParams
import dev.edgewise.ModelDownload
import dev.edgewise.PiiCategory
import dev.edgewise.SessionConfig
import dev.edgewise.SourceKind
import dev.edgewise.defaultFetchConfig
import dev.edgewise.defaultModel
import dev.edgewise.defaults
import dev.edgewise.open
import dev.edgewise.privacyCheck
import dev.edgewise.stream
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

class ChatController(
    private val scope: CoroutineScope,
    private val homeDir: String,
    private val engineConfig: EngineConfig = EngineConfig.defaults(),
) : AutoCloseable {
    sealed interface ModelState {
        data object NotDownloaded : ModelState
        data class Downloading(val progress: DownloadProgress) : ModelState
        data object Loading : ModelState
        data class Ready(val info: EngineInfo) : ModelState
        data class Failed(val reason: String) : ModelState
    }

    /** Where an answer came from, and why. */
    data class Badge(val where: String, val why: String)

    data class Message(val fromUser: Boolean, val text: String, val badge: Badge? = null)

    private val _model = MutableStateFlow<ModelState>(ModelState.NotDownloaded)
    val model: StateFlow<ModelState> = _model.asStateFlow()
    private val _messages = MutableStateFlow<List<Message>>(emptyList())
    val messages: StateFlow<List<Message>> = _messages.asStateFlow()
    private val _generating = MutableStateFlow(false)
    val generating: StateFlow<Boolean> = _generating.asStateFlow()

    private var download: ModelDownload? = null
    private var engine: Engine? = null
    private var session: ChatSession? = null
    private var answering: Job? = null

    /** The catalog's default model, fetched over HTTPS into `<homeDir>/models/`. */
    fun defaultDownload(): ModelDownload =
        ModelDownload(defaultModel().id, homeDir, defaultFetchConfig().copy(prefer = SourceKind.HTTPS))

    /** Downloads (resuming, verifying) and loads the model. */
    fun start(download: ModelDownload = defaultDownload()): Job = scope.launch {
        this@ChatController.download = download
        try {
            val path = withContext(Dispatchers.IO) {
                download.fetch(object : DownloadListener {
                    override fun onProgress(progress: DownloadProgress) {
                        _model.value = ModelState.Downloading(progress)
                    }
                })
            }
            _model.value = ModelState.Loading
            val e = Engine.open(path, engineConfig)
            engine = e
            session = e.newSession(SessionConfig.defaults())
            _model.value = ModelState.Ready(e.info())
        } catch (e: EdgewiseException) {
            _model.value = ModelState.Failed(e.message ?: e.toString())
        }
    }

    /** A new download of the same model: a cancelled one stays cancelled, and this one resumes. */
    fun retry(): Job = start()

    /** Streams the answer to [text] into the last message. */
    fun send(text: String, params: GenerationParams = GenerationParams.defaults()): Job? {
        val s = session ?: return null
        if (_generating.value) return null
        // Everything runs on the device in this build; the badge says why the cloud was not used.
        // (Once the router is exposed, this comes from its RouteDecision instead.)
        val privacy = privacyCheck(text)
        val badge = if (privacy.sensitive) {
            Badge("On device", "contains personal data: " + privacy.categories.joinToString { it.label() })
        } else {
            Badge("On device", "local-only policy: the cloud is off")
        }
        _messages.update { it + Message(fromUser = true, text = text) + Message(fromUser = false, text = "", badge = badge) }
        _generating.value = true
        return scope.launch {
            try {
                s.stream(text, params).collect { piece ->
                    _messages.update { msgs -> msgs.dropLast(1) + msgs.last().let { it.copy(text = it.text + piece) } }
                }
            } catch (e: EdgewiseException) {
                _messages.update { msgs -> msgs.dropLast(1) + msgs.last().copy(text = "⚠ ${e.message}") }
            } finally {
                _generating.value = false
            }
        }.also { answering = it }
    }

    /** Stops the current answer (cancelling the flow cancels the native generation). */
    fun cancelAnswer() {
        answering?.cancel()
    }

    /** Stops the download; partial data is kept and `start()` resumes it. */
    fun cancelDownload() {
        download?.cancel()
    }

    override fun close() {
        cancelAnswer()
        cancelDownload()
        session?.close()
        engine?.close()
    }
}

private fun PiiCategory.label(): String = name.lowercase().replace('_', ' ')
