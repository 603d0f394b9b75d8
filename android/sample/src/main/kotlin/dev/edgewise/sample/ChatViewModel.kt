package dev.edgewise.sample

import android.app.Application
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope

/** Holds the [ChatController] for the activity's lifetime and releases the model with it. */
class ChatViewModel(app: Application) : AndroidViewModel(app) {
    val chat = ChatController(viewModelScope, homeDir = app.filesDir.path)

    override fun onCleared() {
        chat.close()
    }
}
